"""No tool or API branches on which head a model has.

Both heads have one interface (``forward`` -> a dict of named outputs,
``loss(outputs, targets, img_metas)``, ``inference_kind``,
``graph_outputs``, ``graph_results``), so code under ``opera/`` and
``tools/`` never asks for a head's class. The check reads the syntax tree:
``isinstance`` / ``issubclass`` against a ``*Head`` class, and comparisons
of ``type(x)``, ``x.__class__`` or ``x.__name__`` with a ``*Head`` class or
name.
"""
import ast
import os
import os.path as osp
import re

import pytest

from conftest import REPO_ROOT

HEAD = re.compile(r'\w*Head$')


def names_in(node):
    """Identifiers, attribute names and string constants under ``node``."""
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            yield child.id
        elif isinstance(child, ast.Attribute):
            yield child.attr
        elif isinstance(child, ast.Constant) and isinstance(child.value, str):
            yield child.value


def asks_class(node):
    """Whether ``node`` holds ``type(x)``, ``x.__class__`` or ``__name__``."""
    for child in ast.walk(node):
        if isinstance(child, ast.Attribute) and child.attr in ('__class__',
                                                               '__name__'):
            return True
        if isinstance(child, ast.Call) and getattr(child.func, 'id',
                                                   None) == 'type':
            return True
    return False


def head_dispatches(source, filename='<string>'):
    """Line numbers of ``source`` that branch on a head's class."""
    lines = []
    for node in ast.walk(ast.parse(source, filename)):
        if (isinstance(node, ast.Call)
                and getattr(node.func, 'id', None) in ('isinstance',
                                                       'issubclass')
                and len(node.args) == 2
                and any(HEAD.match(n) for n in names_in(node.args[1]))):
            lines.append(node.lineno)
        elif isinstance(node, ast.Compare):
            operands = [node.left] + node.comparators
            if (any(asks_class(op) for op in operands) and any(
                    HEAD.match(n) for op in operands for n in names_in(op))):
                lines.append(node.lineno)
    return lines


def python_files(*folders):
    for folder in folders:
        for root, _, files in os.walk(osp.join(REPO_ROOT, folder)):
            for name in sorted(files):
                if name.endswith('.py'):
                    yield osp.join(root, name)


@pytest.mark.parametrize('planted', [
    "if type(head).__name__ in ('DETRDetectionHead', 'X'):\n    pass",
    'kind = isinstance(detector.bbox_head, PETRHead)',
    'kind = isinstance(head, (heads.PETRHead, int))',
    'same = head.__class__ is DETRDetectionHead',
])
def test_check_finds_a_planted_dispatch(planted):
    assert head_dispatches(f'import os\n{planted}\n') == [2]


def test_no_code_under_opera_or_tools_dispatches_on_a_head():
    found = []
    for path in python_files('opera', 'tools'):
        with open(path) as f:
            source = f.read()
        found += [f'{osp.relpath(path, REPO_ROOT)}:{line}'
                  for line in head_dispatches(source, path)]
    assert found == []
