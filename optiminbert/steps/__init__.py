"""The study's steps, one module each, shared by the DVC stages (``stages/``) and the command
line: each takes the params tree (``settings.load()``) and the command line's overrides. A stage
script imports only its own step, so its dvc.yaml dependencies are exactly what that step imports."""
