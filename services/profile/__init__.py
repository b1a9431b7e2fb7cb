"""The profile service: who each person is (identity graph) and what they are like (features)."""
