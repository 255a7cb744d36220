"""The teacher stage (data -> teacher -> label -> distill): architecture registry, model and training.

- `teacher.archs`: the one registry of teacher architectures (names, notes; imports no torch, so the CLI's
  `--help` stays fast);
- `teacher.model`: building, wrapping, saving and loading teachers (EchoNet checkpoint format);
- `teacher.train`: training a teacher on the traced frames (EchoNet's recipe).
"""
