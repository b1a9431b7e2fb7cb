"""The read model of a batch: changes, merges and erasures applied in order, written back once."""

from __future__ import annotations

from services.content.profiles import ProfileBook, ProfileFacts


def test_changes_apply_in_order_to_a_stored_profile_and_a_new_one() -> None:
    book = ProfileBook({"prf_a": ProfileFacts("prf_a", traits={"email": "old@example.com"})})
    book.update("prf_a", [("traits.email", "new@example.com")])
    book.update("prf_b", [("traits.phone", "+100"), ("tags", ["vip"])])
    book.update("prf_b", [("traits.phone", None)])
    assert book.saved() == [
        ProfileFacts("prf_a", traits={"email": "new@example.com"}),
        ProfileFacts("prf_b", tags=["vip"]),
    ]
    assert book.erased() == [] and book.moved_decisions() == {}


def test_a_merge_keeps_the_survivors_values_and_moves_the_decisions() -> None:
    book = ProfileBook(
        {
            "prf_s": ProfileFacts("prf_s", traits={"email": "s@example.com"}),
            "prf_m": ProfileFacts("prf_m", traits={"email": "m@example.com", "phone": "+1"}),
        }
    )
    book.merge("prf_s", ["prf_m"])
    assert book.saved() == [
        ProfileFacts("prf_s", traits={"email": "s@example.com", "phone": "+1"}),
    ]
    assert book.erased() == ["prf_m"]
    assert book.moved_decisions() == {"prf_m": "prf_s"}
    assert book.erased_decisions() == []


def test_decisions_follow_merges_and_erasures_in_order() -> None:
    book = ProfileBook({})
    book.merge("prf_s", ["prf_m"])  # prf_m's decisions go to prf_s...
    book.erase("prf_s")  # ...and are erased with it
    book.erase("prf_x")
    book.merge("prf_x", ["prf_y"])  # prf_x lives again, with prf_y's decisions
    assert book.moved_decisions() == {"prf_y": "prf_x"}
    assert sorted(book.erased_decisions()) == ["prf_m", "prf_s", "prf_x"]
    assert [f.profile_id for f in book.saved()] == ["prf_x"]
    assert sorted(book.erased()) == ["prf_m", "prf_s", "prf_y"]


def test_an_erased_profile_changed_later_in_the_batch_starts_empty() -> None:
    book = ProfileBook({"prf_a": ProfileFacts("prf_a", traits={"email": "a@example.com"})})
    book.erase("prf_a")
    book.update("prf_a", [("lifecycle_stage", "lead")])
    assert book.saved() == [ProfileFacts("prf_a", lifecycle_stage="lead")]
    assert book.erased_decisions() == ["prf_a"]


def test_only_profiles_whose_facts_changed_are_written_back() -> None:
    kept = ProfileFacts("prf_kept", traits={"plan": "premium"}, tags=["tea"])
    same = ProfileFacts("prf_same", traits={"plan": "basic"})
    changed = ProfileFacts("prf_changed", scores={"rfm": 3})
    book = ProfileBook({"prf_kept": kept, "prf_same": same, "prf_changed": changed})
    book.update("prf_kept", [("features.visits", 4)])  # content does not copy features
    book.update("prf_same", [("traits.plan", "basic")])  # the value it already had
    book.update("prf_changed", [("scores.rfm", 4)])
    book.update("prf_new", [("traits.plan", "trial")])  # no row was read for it
    assert [facts.profile_id for facts in book.changed()] == ["prf_changed", "prf_new"]
    assert len(book.saved()) == 4


def test_the_top_category_and_scores_are_copied_for_the_bandit_and_templates() -> None:
    book = ProfileBook({"prf_a": ProfileFacts("prf_a", traits={"email": "a@example.com"})})
    book.update(
        "prf_a",
        [("features.top_categories", ["tea", "cups"]), ("scores.churn_risk", 0.74)],
    )
    [facts] = book.changed()
    assert facts.top_category == "tea"
    assert facts.as_variable()["scores"] == {"churn_risk": 0.74}
    assert facts.as_variable()["top_category"] == "tea"
    book.update("prf_a", [("features.top_categories", [])])
    assert facts.top_category is None


def test_a_changed_top_category_alone_is_written_back_and_survives_a_merge() -> None:
    book = ProfileBook(
        {
            "prf_s": ProfileFacts("prf_s", top_category="tea"),
            "prf_m": ProfileFacts("prf_m", top_category="cups"),
            "prf_c": ProfileFacts("prf_c"),
        }
    )
    book.update("prf_c", [("features.top_categories", ["snacks"])])
    book.merge("prf_s", ["prf_m"])
    assert {f.profile_id: f.top_category for f in book.changed()} == {"prf_c": "snacks"}
    assert [f.top_category for f in book.saved() if f.profile_id == "prf_s"] == ["tea"]
