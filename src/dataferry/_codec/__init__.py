"""The MemStache pipeline: serializers, compressors, encryption, and the L2 envelope."""

from dataferry._codec._codec import Codec, Decoded, DecodeError
from dataferry._codec._protocols import Compressor, Encryptor, Serializer
from dataferry._codec._serializers import JsonSerializer

__all__ = ["Codec", "Compressor", "DecodeError", "Decoded", "Encryptor", "JsonSerializer", "Serializer"]
