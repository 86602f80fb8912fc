"""Identity-level Train part 1: uploads in, photo check with report and reference face, dataset; the tab action."""

import pytest
from PIL import Image

from easyphoto import operations
from easyphoto.context import standalone_context
from easyphoto.errors import EasyPhotoError, InvalidIdentityId
from easyphoto.store import read_json
from easyphoto.train import prepare
from easyphoto.ui.train_tab import cancel_job, check_photos_flow


@pytest.fixture
def ctx(tmp_path):
    return standalone_context(tmp_path)


def test_uploads_are_copied_byte_for_byte_with_safe_names(ctx, tmp_path, photos_same_man):
    odd = tmp_path / "we!rd name..JPG"
    odd.write_bytes(photos_same_man[0].read_bytes())
    added = prepare.add_photos(ctx, "alice", [photos_same_man[1], odd]).added
    assert [p.name for p in added] == ["obama2.jpg", "we_rd_name.jpg"]
    assert added[0].read_bytes() == photos_same_man[1].read_bytes()
    more = prepare.add_photos(ctx, "alice", [photos_same_man[2]]).added
    assert more[0].name == "obama3.jpg"
    with pytest.raises(InvalidIdentityId):
        prepare.add_photos(ctx, "../alice", [photos_same_man[0]])
    assert ctx.identities.list() == ["alice"]


def test_check_saves_report_and_reference_face(ctx, photos_same_man, photo_other_person):
    prepare.add_photos(ctx, "alice", [*photos_same_man, photo_other_person])
    report = prepare.check_photos(ctx, "alice")
    layout = ctx.identities.get("alice")
    saved = read_json(layout.report)
    assert saved["kept"] == 3 and saved["reference"] == report.reference
    reference = Image.open(layout.root / "reference.jpg")
    assert reference.width == reference.height and reference.width > 200
    assert len(prepare.thumbnails(layout, report.to_dict())) == 4


def test_check_needs_photos_and_an_existing_identity(ctx):
    with pytest.raises(EasyPhotoError, match="No identity named"):
        prepare.check_photos(ctx, "nobody")
    ctx.identities.create("empty")
    with pytest.raises(EasyPhotoError, match="has no photos yet"):
        prepare.check_photos(ctx, "empty")


def test_prepare_identity_dataset_writes_into_the_identity(ctx, photos_same_man):
    prepare.add_photos(ctx, "bob", photos_same_man)
    items = prepare.prepare_identity_dataset(ctx, "bob")
    layout = ctx.identities.get("bob")
    assert len(items) == 3 and (layout.dataset / "metadata.jsonl").is_file()
    assert sorted(p.name for p in (layout.dataset / "train").glob("*.jpg")) == ["0.jpg", "1.jpg", "2.jpg"]


def final(flow):
    outputs = list(flow)
    assert outputs, "the flow yielded nothing"
    return outputs, outputs[-1]


def test_train_tab_check_runs_as_a_job_and_streams_progress(ctx, photos_same_man, photo_other_person):
    try:
        outputs, (gallery, summary, job) = final(
            check_photos_flow(ctx, "carol", [str(p) for p in (*photos_same_man, photo_other_person)]))
        assert job == "" and "3 of 4 photos kept" in summary and len(gallery) == 4
        captions = [caption for _, caption in gallery]
        assert any("✗ dropped · a different person" in c for c in captions)
        assert sum("★ reference" in c for c in captions) == 1
        assert "Fewer than 5 photos kept" in summary
        assert all(o[2] for o in outputs[:-1])  # every progress update carries the job id (for Cancel)
        records = operations.job_queue(ctx).list(kind="check_photos")
        assert [r.state.value for r in records] == ["succeeded"]
        _, (again, _, _) = final(check_photos_flow(ctx, "carol", None))  # re-check without new uploads
        assert len(again) == 4
        _, (empty, message, _) = final(check_photos_flow(ctx, "", None))
        assert empty == [] and "Enter an identity id" in message
        _, (_, bad, _) = final(check_photos_flow(ctx, "Carol!", [str(photos_same_man[0])]))
        assert "Cannot check photos" in bad and "'C'" in bad
        assert cancel_job(ctx, "") == "Nothing is running."
        assert "succeeded" in cancel_job(ctx, records[0].id)
    finally:
        operations.shutdown_all()
