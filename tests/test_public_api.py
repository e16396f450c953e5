"""The curated public API: complete, documented, and the error tree as documented."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import dataferry
import dataferry._errors as errors


def test_all_lists_exactly_the_public_names() -> None:
    public = {n for n in vars(dataferry) if not n.startswith("_") and n != "annotations"}
    public.discard("__version__")
    public -= PUBLIC_MODULES  # set on the package once imported (``import dataferry.testing``)
    assert set(dataferry.__all__) - {"__version__"} == public
    assert list(dataferry.__all__) == sorted(dataferry.__all__)


@pytest.mark.parametrize("name", [n for n in dataferry.__all__ if n != "__version__"])
def test_every_public_name_is_documented(name: str) -> None:
    obj = getattr(dataferry, name)
    assert inspect.getdoc(obj), f"{name} has no docstring"
    if inspect.isclass(obj):
        for attr, member in vars(obj).items():
            if attr.startswith("_") or not callable(member):
                continue
            assert inspect.getdoc(member), f"{name}.{attr} has no docstring"


#: Public submodules: imported as ``dataferry.<name>``, each with a documented ``__all__``.
PUBLIC_MODULES = {"contrib", "events", "testing"}


def test_private_modules_are_private() -> None:
    for mod in pkgutil.iter_modules(dataferry.__path__):
        if mod.name in PUBLIC_MODULES:
            continue
        assert mod.name.startswith("_"), f"dataferry.{mod.name} should be private"


@pytest.mark.parametrize("module", sorted(PUBLIC_MODULES))
def test_public_submodules_document_everything_they_export(module: str) -> None:
    mod = importlib.import_module(f"dataferry.{module}")
    assert inspect.getdoc(mod)
    # Names defined in the module itself (not its imports) must all be exported.
    defined_here = {
        n
        for n, v in vars(mod).items()
        if not n.startswith("_") and getattr(v, "__module__", None) == mod.__name__
    }
    assert defined_here <= set(mod.__all__)
    for name in mod.__all__:
        obj = getattr(mod, name)
        assert inspect.getdoc(obj), f"dataferry.{module}.{name} has no docstring"
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or not (callable(member) or isinstance(member, property)):
                    continue
                assert inspect.getdoc(member), f"{module}.{name}.{attr} has no docstring"


def test_every_exception_derives_from_the_root_and_is_in_the_tree_docstring() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        exc = getattr(errors, name)
        assert issubclass(exc, dataferry.DataFerryError)
        assert name in doc
        assert getattr(dataferry, name) is exc


@pytest.mark.parametrize(
    ("exc", "base"),
    [
        (dataferry.ConfigurationError, ValueError),
        (dataferry.InvalidKeyError, ValueError),
        (dataferry.SerializationError, TypeError),
        (dataferry.PayloadTooLargeError, ValueError),
        (dataferry.FactoryTimeoutError, TimeoutError),
        (dataferry.CircuitOpenError, dataferry.DistributedCacheError),
        (dataferry.CacheClosedError, RuntimeError),
    ],
)
def test_exceptions_subclass_the_stdlib_base_a_user_would_catch(
    exc: type[Exception], base: type[Exception]
) -> None:
    assert issubclass(exc, base)


def test_sync_and_async_facades_offer_the_same_methods() -> None:
    def public(cls: type) -> set[str]:
        return {n for n in vars(cls) if not n.startswith("_")}

    renamed = {"aclose": "close"}
    async_names = {renamed.get(n, n) for n in public(dataferry.AsyncDataFerry)}
    assert async_names == public(dataferry.DataFerry)
