"""tools/analysis_tools/parity.py: records of the same code and seed are
equal entry by entry; a changed entry is found, named, and fails."""
import json
import os.path as osp

import pytest
from conftest import REPO_ROOT, load_tool

parity = load_tool('tools/analysis_tools/parity.py')
pytestmark = pytest.mark.usefixtures('single_thread')
TINY = f'{REPO_ROOT}/tests/configs/tiny_h_deformable_detr.py'


def test_records_repeat_and_a_change_is_reported(tmp_path, capsys):
    for name in ('a', 'b'):
        assert parity.main([
            'record', TINY, '--out', str(tmp_path / name), '--input-size',
            '64', '96', '--num-boxes', '2'
        ]) == 0
    assert parity.main(['compare', str(tmp_path / 'a'),
                        str(tmp_path / 'b')]) == 0
    record = tmp_path / 'b' / 'tiny_h_deformable_detr.json'
    entries = json.loads(record.read_text())
    kinds = {key.split('/')[0] for key in entries}
    assert kinds == {'init', 'count', 'loss', 'grad', 'test'}
    assert entries['count/params'] > 0
    grad = 'grad/bbox_head.cls_branches.0.weight'
    entries[grad]['sha1'] = '0' * 40
    record.write_text(json.dumps(entries))
    capsys.readouterr()
    assert parity.main(['compare', str(tmp_path / 'a'),
                        str(tmp_path / 'b')]) == 1
    out = capsys.readouterr().out
    assert f'{len(entries)} entries, 1 differ' in out and grad in out
    assert osp.exists(tmp_path / 'a' / 'tiny_h_deformable_detr.json')
