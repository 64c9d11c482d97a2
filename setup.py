"""Install opera, the hybrid-matching DETR codebase.

The distribution is called ``opera-hdetr`` (``opera`` on the package index is
an unrelated project); the import package is ``opera``. torch, torchvision,
mmcv-full and mmdet are left to ``tools/install.sh``: mmcv-full must be built
from source against the installed torch.
"""
import os.path as osp

from setuptools import find_packages, setup


def read_version():
    namespace = {}
    with open(osp.join(osp.dirname(__file__), 'opera', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def read_requirements(name):
    path = osp.join(osp.dirname(__file__), 'requirements', name)
    with open(path) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line]


setup(
    name='opera-hdetr',
    version=read_version(),
    description='Hybrid-matching DETRs (H-Deformable-DETR, H-PETR) on '
    'mmcv-full 1.x and mmdet 2.x',
    long_description=open('README.md').read()
    if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    license='Apache License 2.0',
    packages=find_packages(include=('opera', 'opera.*', 'mmcv_custom',
                                    'mmcv_custom.*')),
    python_requires='>=3.8',
    install_requires=read_requirements('runtime.txt'),
    extras_require={'tests': read_requirements('tests.txt')},
    zip_safe=False)
