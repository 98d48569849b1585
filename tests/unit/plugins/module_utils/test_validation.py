# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""validation.py: the one ASCII integer parser, and every number parser of the library using it."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd import (
    dbdctl, dkms, reload as reload_lib, sync, tracker, validation)
from ansible_collections.snapfleet.dattobd.plugins.module_utils._dattobd.errors import DattobdError

# Unicode digits that str.isdigit(), int() or re's \d accept: superscript two (isdigit, int fails),
# Arabic-Indic one, fullwidth one, Devanagari five, mathematical bold one.
UNICODE_DIGITS = [u'\u00b2', u'\u0661', u'\uff11', u'\u096b', u'\U0001d7cf', u'1\u0661', u'\u00b9\u00b2']


@pytest.mark.parametrize('value, expected', [
    (0, 0), (7, 7), (-3, -3), ('0', 0), ('42', 42), ('-5', -5), ('007', 7), (b'12', 12),
])
def test_to_int_accepts_ints_and_ascii_digits(value, expected):
    assert validation.to_int(value) == expected


@pytest.mark.parametrize('value', UNICODE_DIGITS + [
    True, False, None, 1.0, '', ' ', '+1', '1.0', '1e3', '0x10', '1_000', ' 1', '1\n', [], {}, b'\xff'])
def test_to_int_refuses_everything_else(value):
    assert validation.to_int(value) is None


def test_to_int_canonical_and_strip():
    assert validation.to_int('007', canonical=True) is None
    assert validation.to_int('0', canonical=True) == 0
    assert validation.to_int(' 12\n', strip=True) == 12
    assert validation.to_int(u' \u0661\n', strip=True) is None


def test_check_int_names_the_range():
    assert validation.check_int('3', 'minor', 0, 255) == 3
    with pytest.raises(DattobdError, match=r"minor must be an integer 0\.\.255 written in ASCII digits, got '"):
        validation.check_int(u'\u0661', 'minor', 0, 255)
    with pytest.raises(DattobdError, match='>= 1'):
        validation.check_int(0, 'timeout', minimum=1)
    with pytest.raises(DattobdError, match='<= 9'):
        validation.check_int(10, 'x', maximum=9)
    with pytest.raises(ValueError, match='integer written'):
        validation.check_int('x', 'x', error=ValueError)


@pytest.mark.parametrize('value, expected', [
    (0, 0.0), (3, 3.0), (0.25, 0.25), (-1.5, -1.5), ('30', 30.0), ('0.1', 0.1), ('.5', 0.5), ('2.', 2.0),
    ('1e3', 1000.0), ('-2.5E-1', -0.25), (b'7', 7.0),
])
def test_to_number_accepts_finite_numbers_and_ascii_decimals(value, expected):
    assert validation.to_number(value) == expected


@pytest.mark.parametrize('value', UNICODE_DIGITS + [
    u'\u0660.\u0661', u'1.\u0661', True, False, None, float('nan'), float('inf'), -float('inf'), 'nan', 'inf',
    'Infinity', '1e400', '', '.', '+1', '1_0', '0x10', ' 1', '1,5', [], {}, b'\xff'])
def test_to_number_refuses_everything_else(value):
    assert validation.to_number(value) is None


def test_check_number_names_the_range():
    assert validation.check_number('0.5', 'budget', 0, 1) == 0.5
    with pytest.raises(DattobdError, match=r"budget must be a number 0..1 written in ASCII digits, got 1\.5"):
        validation.check_number(1.5, 'budget', 0, 1)
    with pytest.raises(DattobdError, match=r'days must be a number >= 0 written in ASCII digits, got nan'):
        validation.check_number(float('nan'), 'days', 0)


class _Module(object):
    argument_spec = dict(timeout=dict(type='int'), name=dict(type='str'), days=dict(type='float'),
                         parameters=dict(type='dict', options=dict(debug=dict(type='int'))))

    def fail_json(self, **kw):
        raise DattobdError(kw['msg'])


@pytest.mark.parametrize('raw', [
    {'timeout': u'\u0661'}, {'timeout': '1e3'}, {'timeout': 1.5}, {'parameters': {'debug': u'\uff11'}},
    {'days': u'\u0661'}, {'days': u'\u0660.\u0661'}, {'days': 'nan'}, {'days': '1e400'}, {'days': True},
])
def test_check_number_options_refuses_non_ascii_raw_values(raw):
    with pytest.raises(DattobdError, match='ASCII digits'):
        validation.check_number_options(_Module(), raw)


def test_check_number_options_accepts_ascii():
    validation.check_number_options(_Module(), {'timeout': '60', 'name': u'\u0661', 'parameters': {'debug': 1},
                                                'days': '0.5'})
    validation.check_number_options(_Module(), {'days': 30})
    validation.check_number_options(_Module(), {'timeout': None, 'parameters': None})


def test_raw_params_is_empty_without_a_task():
    assert validation.raw_params() == {} or isinstance(validation.raw_params(), dict)


# --- every parser of the library refuses Unicode digits --------------------------------------

@pytest.mark.parametrize('value', UNICODE_DIGITS + [u'/dev/datto\u0661'])
def test_sync_snapshot_refuses_unicode_digits(value):
    with pytest.raises(sync.SyncError, match='snapshot must be'):
        sync.parse_snapshot(value)


@pytest.mark.parametrize('value', UNICODE_DIGITS)
def test_reload_minor_and_cache_refuse_unicode_digits(value):
    with pytest.raises(DattobdError):
        reload_lib.validate_minor(value)
    with pytest.raises(DattobdError):
        reload_lib.validate_cache_size(value)


@pytest.mark.parametrize('value', UNICODE_DIGITS)
def test_dbdctl_number_refuses_unicode_digits(value):
    with pytest.raises(dbdctl.DbdctlError):
        dbdctl.number(value, 'minor')


@pytest.mark.parametrize('value', UNICODE_DIGITS)
def test_dkms_parameters_refuse_unicode_digits(value):
    with pytest.raises(DattobdError, match='not an integer'):
        dkms.validate_parameters({'max_snap_devices': value})


@pytest.mark.parametrize('value', UNICODE_DIGITS)
def test_tracker_default_cache_ignores_unicode_digits(value, tmp_path):
    class Host(object):
        def read_text(self, path):
            return value + '\n'
    assert tracker._default_cache(Host()) is None


@pytest.mark.parametrize('value', UNICODE_DIGITS)
def test_modprobe_conf_keeps_unicode_digits_as_text(value):
    assert dkms.parse_modprobe_conf('options dattobd max_snap_devices=%s\n' % value) == {'max_snap_devices': value}


def test_no_bare_number_parsing_left_in_the_library():
    """isdigit/isnumeric/isdecimal and \\d (Unicode-aware) stay out of module_utils and modules."""
    import os
    import re
    here = os.path.dirname(os.path.abspath(validation.__file__))
    mods = os.path.join(here, '..', '..', 'modules')
    bad = []
    for d in (here, mods):
        for name in sorted(os.listdir(d)):
            if not name.endswith('.py') or name == 'validation.py':
                continue
            with open(os.path.join(d, name)) as f:
                for n, line in enumerate(f, 1):
                    if re.search(r'\.is(digit|numeric|decimal)\(|\\d', line):
                        bad.append('%s:%d: %s' % (name, n, line.strip()))
    assert bad == []


class _Strict(object):
    """Stands in for AnsibleModule: raises like ansible-core on a dict option given an int."""
    made = []

    def __init__(self, argument_spec, supports_check_mode=False):
        self.argument_spec = argument_spec
        self.params = dict(self.raw)
        _Strict.made.append(argument_spec)
        for name, opt in argument_spec.items():
            if opt.get('type') != 'raw' and name in self.params and isinstance(self.params[name], (int, float)) \
                    and opt.get('type') != 'int':
                raise TypeError("argument of type 'int' is not iterable")
            if opt.get('type') == 'int' and self.params.get(name) == float('inf'):
                raise OverflowError('cannot convert Infinity to integer')

    def fail_json(self, **kw):
        raise DattobdError(kw['msg'])


SPEC = dict(auto_expand=dict(type='dict', options=dict(step_size=dict(type='int'))), timeout=dict(type='int'),
            hooks=dict(type='list', elements='dict', options=dict(argv=dict(type='list', elements='str'))))


@pytest.mark.parametrize('raw, message', [
    ({'auto_expand': -1}, "auto_expand must be a dictionary, got -1"),
    ({'timeout': float('inf')}, 'timeout must be an integer written in ASCII digits, got inf'),
    ({'hooks': 3}, 'hooks must be a list of dictionaries, got 3'),
])
def test_make_module_fails_instead_of_ansible_core_tracebacks(raw, message, monkeypatch):
    monkeypatch.setattr(_Strict, 'raw', raw, raising=False)
    monkeypatch.setattr(validation, 'raw_params', lambda: raw)
    with pytest.raises(DattobdError, match='Invalid module arguments: ' + message):
        validation.make_module(_Strict, SPEC)


def test_shape_problem_lists():
    assert 'got an item 3' in validation._shape_problem(SPEC, {'hooks': [{'argv': []}, 3]})
    assert validation._shape_problem(SPEC, {'hooks': 'argv=x', 'auto_expand': {'step_size': 1}}) is None
