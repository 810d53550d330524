"""Pure, synchronous workflow logic. Imports no fastapi, beanie or motor."""
