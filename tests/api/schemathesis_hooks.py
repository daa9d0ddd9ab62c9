"""Schemathesis hooks for tests/api/test_schema_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

Generated order ids almost never name an order, so every order route would only ever answer
404. Here a path's `order_id`, when the generated one is valid, is sometimes swapped for a real
order's (ORDERMILL_FUZZ_ORDERS, comma-separated): returns, refunds, questions and feedback
then reach a delivered order's validators and handlers. An invalid id is left alone, so
negative cases stay negative.
"""

import os
import re
from typing import Any

import schemathesis
from hypothesis import strategies as st

ORDER_IDS = [o for o in os.environ.get("ORDERMILL_FUZZ_ORDERS", "").split(",") if o]
_VALID_ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")


@schemathesis.hook
def flatmap_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    if path_parameters is None or not ORDER_IDS:
        return st.just(path_parameters)
    order_id = path_parameters.get("order_id")
    if not isinstance(order_id, str) or not _VALID_ORDER_ID.fullmatch(order_id):
        return st.just(path_parameters)
    real = [{**path_parameters, "order_id": real_id} for real_id in ORDER_IDS]
    return st.sampled_from([path_parameters, *real])
