"""ghl-bridge development and operations tools: the operator CLI, the local stack, the GHL sandbox.

Nothing here ships inside a function: the functions import only `shared`.
"""
