"""Our runs beside the published recipes: the CSV's arithmetic, minutes, the command (numbers: docs/ACCURACY.md)."""

import pytest

from tools.accuracy_anchors import LECTURE_MAC, POINTS, main, minutes, read_points

HEADER = "source,recipe,training_mac,test_mean,test_sd,runs,chosen,members,epochs\n"


def test_our_rows_in_the_docs_csv_are_their_own_members_times_epochs_and_anchors_keep_their_counts():
    points = read_points(POINTS)
    ours = {p["recipe"]: p for p in points if p["source"] == "kerascnn"}
    today = ours["best: 2 x 28, smoothing"]
    assert (today["test_mean"], today["test_sd"], today["runs"]) == (99.65, 0.05, 3)
    deotte = [p for p in points if p["recipe"] == "15 CNNs x 35"][0]
    assert (deotte["training_mac"], deotte["test_mean"], deotte["runs"]) == (1.4e15, 99.745, 100)
    committee = [p for p in points if p["recipe"] == "10 ResNets x 11"][0]
    assert (committee["runs"], committee["test_sd"]) == (1, None)  # one run: no spread


def test_a_row_of_ours_whose_compute_does_not_match_its_members_and_epochs_is_refused(tmp_path):
    path = tmp_path / "points.csv"
    path.write_text(HEADER + 'kerascnn,"2 x 28",9.9e13,99.7,0.01,3,validation,2,28\n')
    with pytest.raises(ValueError, match=r"'2 x 28' has training_mac=9.9e\+13; its members x epochs make 7.372e\+13"):
        read_points(str(path))
    path.write_text(HEADER + 'kerascnn,"no count",9.9e13,99.7,0.01,3,validation,,\n')
    with pytest.raises(ValueError, match=r"'no count' is ours, so it needs whole numbers of members and epochs. "
                                         r"Received: members='', epochs=''"):
        read_points(str(path))


def test_minutes_are_the_compute_at_the_lecture_recipes_measured_rate():
    # 5 members x 15 epochs x 55,000 images at 1,000 model-images/s: 4,125 s.
    assert minutes(75 * 55_000 * 3 * LECTURE_MAC, 1000.0) == pytest.approx(68.75)


def test_the_command_prints_the_table_and_draws_where_it_is_told(tmp_path, capsys):
    path, plot = tmp_path / "points.csv", tmp_path / "anchors.png"
    path.write_text(HEADER + f'kerascnn,"1 x 10",{10 * 55_000 * 3 * LECTURE_MAC},99.5,0.02,3,validation,1,10\n'
                    'Someone,"a big net",1e15,99.75,,1,last epoch,,\n')
    assert main(["--lecture-rate", "1000", "--machine", "a test CPU", "--points", str(path), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "| kerascnn | 1 x 10 | 1.3e+13 | 9 | 99.500 ± 0.020 | 3 | validation |" in out
    assert "| Someone | a big net | 1e+15 | 696 | 99.750 | 1 | last epoch |" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_rate_that_is_not_positive_exits_2_naming_it(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--lecture-rate", "0", "--machine", "x"])
    assert exit_info.value.code == 2
    assert "--lecture-rate must be a number of images per second > 0. Received: 0.0" in capsys.readouterr().err
