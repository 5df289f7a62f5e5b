"""The generated protobuf/gRPC modules (confab.v1), with a clear message when they are missing.

They are generated at build time by bindings/python/build_stubs.sh into a directory OUT that
must be on sys.path next to bindings/python (``confab`` extends its package path over every
``confab`` directory on sys.path, so ``confab.v1`` is found in OUT/confab/v1).
"""

try:
    from confab.v1 import coordination_pb2 as pb
    from confab.v1 import coordination_pb2_grpc as pb_grpc
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "confab: the generated stubs confab.v1.coordination_pb2 are not importable. Generate "
        "them with `bindings/python/build_stubs.sh OUT` and put OUT on PYTHONPATH next to "
        f"bindings/python (PYTHONPATH=bindings/python:OUT). Cause: {e}") from e

__all__ = ["pb", "pb_grpc"]
