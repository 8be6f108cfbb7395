"""containerd's gRPC API, wire for wire: generated messages and stubs, conversions, errors.

The ``*_pb2*`` modules are generated from the .proto files beside them (see
``layerdiff.api.generate`` and docs/api.md); ``convert`` and ``status`` are the only
places the rest of layerdiff needs to touch protobuf.
"""
