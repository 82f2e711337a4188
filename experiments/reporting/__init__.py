"""The pieces behind run reports and comparisons: reading run/eval dirs, curves and seed statistics, charts
(matplotlib, imported lazily) and one document model rendered as Markdown and self-contained HTML."""
