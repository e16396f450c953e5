"""Optional integrations of DataFerry with frameworks, each behind its own extra.

Every module here needs a package that DataFerry itself does not depend on, installed with the
matching extra (``pip install 'dataferry[<extra>]'``); importing a module whose framework is
missing raises :class:`ImportError` naming that command. Nothing is imported eagerly: importing
``dataferry`` or ``dataferry.contrib`` never imports a framework.
"""

__all__: list[str] = []
