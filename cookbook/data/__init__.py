"""The bundled data of the embedded default: small deterministic chat and comparison sets over
simple tasks, and the gold judge (the hidden rule that labelled the comparisons).

Entry points: `cookbook.data.bundled` (splits, JSONL files, cache dir) and
`cookbook.data.gold_judge` (score / preference of any answer, in the bundled format or a real
model's own wording, which `cookbook.data.free_form` reads).
"""
