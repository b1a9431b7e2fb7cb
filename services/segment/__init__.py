"""The segment service: who matches which segment, in real time, on a timer and in bulk."""
