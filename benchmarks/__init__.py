"""The benchmark scripts; tests import their helpers as ``benchmarks.<script>``."""
