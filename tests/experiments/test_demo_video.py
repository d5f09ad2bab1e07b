"""`simgan demo video` on tiny settings."""

import json


def test_demo_video_tiny(tmp_path):
    from simgan.experiments.demo_video import VideoDemoSettings, run_video_demo
    settings = VideoDemoSettings(sequences=4, frames=6, test_sequences=3, test_frames=6, gaze_epochs=0.5,
                                 simgan={"train": {"disc_pretrain": 2, "steps": 3, "batch_size": 8, "buffer_size": 16,
                                                   "sample_every": 100, "checkpoint_every": 100}},
                                 gaze={"eval_every_images": 16, "batch_size": 16}, c2st={"max_steps": 5}, animated=2)
    m = run_video_demo(tmp_path / "v", seed=1, device="cpu", settings=settings, echo=lambda s: None,
                       config_overrides={"refiner": {"width": 4, "num_blocks": 1}})
    saved = json.loads((tmp_path / "v" / "metrics.json").read_text())
    assert set(saved["warping_error"]) == {"synthetic", "per_frame", "temporal", "target"}
    assert set(saved["gaze_jitter_deg"]) == {"synthetic", "per_frame", "temporal"}
    assert {"per_frame", "temporal"} <= set(saved["c2st"]) and set(saved["gaze_mean_deg"]) == {"per_frame", "temporal"}
    assert saved["seconds"] > 0 and m["settings"]["seed"] == 1
    # one code per sequence never flickers more than a code per frame (here R has barely trained)
    assert saved["warping_error"]["temporal"] <= saved["warping_error"]["per_frame"]
    report = (tmp_path / "v" / "report.html").read_text()
    assert "data:image/gif;base64," in report and "Warping error cut" in report
    # the per-frame copies carry no sequence labels; the sequence sets do
    line = (tmp_path / "v" / "data" / "test_frames" / "labels.jsonl").read_text().splitlines()[0]
    assert "sequence" not in json.loads(line)
