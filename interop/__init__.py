"""DHO Interop: integration layer for Norwegian digital hjemmeoppfølging."""

__version__ = "0.1.0"
