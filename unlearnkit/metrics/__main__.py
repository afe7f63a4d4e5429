"""``python -m unlearnkit.metrics [PATH]``: regenerate the metric reference page (default docs/metrics.md)."""

import sys

from .catalog import write_metrics_doc

print(write_metrics_doc(sys.argv[1] if len(sys.argv) > 1 else "docs/metrics.md"))
