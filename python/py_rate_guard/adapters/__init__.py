"""Framework adapters: `py_rate_guard.adapters.fastapi`, `.starlette` and `.django`.

Each is imported on its own, so that only the framework in use needs to be installed. They
share the decision (global rules and route limits together, keys resolved by the native front)
and differ only in how they read a request and answer it.
"""
