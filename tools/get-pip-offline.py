"""Stand-in for the get-pip bootstrap script that ansible-test downloads.

ansible-test sanity creates one virtualenv per test and bootstraps pip into it with a get-pip.py
that it downloads from a host outside the package registries this project can reach. tools/bootstrap
installs this file in its place (~/.ansible/test/cache/get_pip_<version>.py), beside the pip wheel
of that version downloaded from PyPI. Like get-pip.py it runs pip from the wheel and installs the
requested packages ("pip==<version>" and the options ansible-test passes) into the running Python.
"""
import glob
import os
import sys


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    version = os.path.splitext(os.path.basename(__file__))[0][len('get_pip_'):].replace('_', '.')
    wheels = glob.glob(os.path.join(here, 'pip-%s-*.whl' % version))
    if not wheels:
        sys.exit('get-pip stand-in: no pip %s wheel beside %s; run tools/bootstrap again' % (version, __file__))
    sys.path.insert(0, wheels[0])
    from pip._internal.cli.main import main as pip_main  # pylint: disable=import-outside-toplevel

    args = sys.argv[1:]
    extra = []
    if '--no-setuptools' not in args:
        extra.append('setuptools')
    if '--no-wheel' not in args:
        extra.append('wheel')
    args = [a for a in args if a not in ('--no-setuptools', '--no-wheel')]
    sys.exit(pip_main(['install', '--upgrade', '--force-reinstall'] + args + extra))


if __name__ == '__main__':
    main()
