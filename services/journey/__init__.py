"""The journey service: journeys as graphs, each profile's run through them, durable timers."""
