"""The one output-safety helper: refuse overwrites and inputs, atomic files and directories, stale temps."""
import pytest

from caloforge.outputs import *


def test_outputs_refuse_overwrite_and_swap_whole(tmp_path):
    p=tmp_path/"a.txt"; atomic_write_text(p,"x"); assert p.read_text()=="x"
    with pytest.raises(OutputError): check_output(p)
    check_output(p, force=True)
    with pytest.raises(OutputError): check_output(p, force=True, inputs=[p])
    with pytest.raises(RuntimeError), atomic_path(tmp_path/"b") as t:
        t.write_text("y"); raise RuntimeError
    assert sorted(x.name for x in tmp_path.iterdir())==["a.txt"]
    d=tmp_path/"rep"
    with replaced_dir(d) as t: (t/"1").write_text("1")
    with replaced_dir(d) as t: (t/"2").write_text("2")
    assert [x.name for x in d.iterdir()]==["2"]
    assert sorted(x.name for x in tmp_path.iterdir())==["a.txt","rep"]
    (tmp_path/f".z{TMP_MARK}999999-abc").write_text("")
    assert len(clean_stale_temps(tmp_path))==1
