"""The MemStache pipeline: serializers, compressors, encryption, and the L2 envelope."""

from dataferry._codec._codec import Codec, Decoded, DecodeError
from dataferry._codec._compressors import GzipCompressor, Lz4Compressor, ZstdCompressor
from dataferry._codec._encryption import AesGcmEncryptor
from dataferry._codec._envelope import Header, compressor_name, serializer_name
from dataferry._codec._keyring import Keyring
from dataferry._codec._protocols import Compressor, Encryptor, Serializer
from dataferry._codec._serializers import JsonSerializer, MsgpackSerializer, PickleSerializer

__all__ = [
    "AesGcmEncryptor",
    "Codec",
    "Compressor",
    "DecodeError",
    "Decoded",
    "Encryptor",
    "GzipCompressor",
    "Header",
    "JsonSerializer",
    "Keyring",
    "Lz4Compressor",
    "MsgpackSerializer",
    "PickleSerializer",
    "Serializer",
    "ZstdCompressor",
    "compressor_name",
    "serializer_name",
]
