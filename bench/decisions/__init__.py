"""The decision-quality simulator: a population with planted truth, the real decision code run
over simulated days, and every decision scored against an oracle that knows the truth.

`python -m bench decisions [--truth FILE] [--out DIR]`; the truth file's format is in
docs/models/simulator.md, and `truth.json` beside this file is the default.
"""
