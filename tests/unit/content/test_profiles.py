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
