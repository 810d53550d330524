# The state manager image. Settings come from the environment (see .env.example).
FROM python:3.12-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY state_manager ./state_manager
RUN pip install --no-cache-dir . && useradd --system --uid 10001 exosphere

USER exosphere
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status == 200 else 1)"
CMD ["python", "-m", "state_manager", "--host", "0.0.0.0", "--port", "8000"]
