"""A secret stored under another SECRETS_ENCRYPTION_KEY (say, by a replica started with another
key) is an operator error: a clear answer that SDKs do not retry, never a 500."""

from __future__ import annotations

import os

from state_manager.crypto import SecretCipher
from state_manager.db.documents import GraphTemplate
from tests.factories import Api, graph, node, template


async def test_secrets_under_another_key_are_a_clear_non_retryable_error(api: Api) -> None:
    await api.register(node("Alpha", secrets=["token"]))
    await api.upsert("g", graph(template("a", "Alpha", {"x": "1"}), secrets={"token": "s3cret"}))
    other = SecretCipher(os.urandom(32))
    await GraphTemplate.get_motor_collection().update_one(
        {"name": "g"}, {"$set": {"secrets": {"token": other.encrypt("s3cret")}}}
    )
    await api.trigger("g")
    [state] = await api.claim("Alpha", batch_size=1)

    answer = await api.call("GET", f"/state/{state['state_id']}/secrets", expect=409)

    assert "SECRETS_ENCRYPTION_KEY" in answer["detail"] and "graph g" in answer["detail"]
    assert "s3cret" not in answer["detail"]
