"""EchoCLIP evaluation (paper §3.8–3.9): mask quality and cardiac phase judged by a vision–language model.

Modules: `model` (open_clip loading, offline-first), `arch` (architecture from a bare state dict),
`embed` (batched, cached frame embeddings), `scores` (mask quality, phase signal, aFD pairing),
`runner` (dataset + predictions folders -> results), `screen` (ranking a dataset by prompts). The
reports (JSON, Markdown, figures) are written by `echodfkd.report.echoclip` and `echodfkd.report.screen`.
"""
