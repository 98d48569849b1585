# -*- coding: utf-8 -*-
# Copyright (c) snapfleet.dattobd contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The node_exporter metrics of a backup cycle, written when it ends (a mixin of :class:`backup_cycle.Cycle`;
the text and the file are :mod:`metrics`'s)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from . import metrics as metrics_mod


class Publishing(object):
    """Steps of :class:`backup_cycle.Cycle` (uses its ``p``, ``record``, ``loaded_record``, ``mode``, ``reason``,
    ``after_reboot``, ``cow_usage``, ``verification``, ``run_began``, ``warnings``)."""

    def _publish(self, result=None, exc=None):
        """Write the node_exporter metrics of this cycle (``result``, or the failure ``exc``); never fails the cycle.

        The result (or the failure's details) says which file (``metrics_file``; null when none is written).
        """
        path = self.p.get('metrics_file')
        details = result if result is not None else getattr(exc, 'details', None)
        if path:
            record = self.record or self.loaded_record or {}
            minor = (result or {}).get('minor', record.get('minor', self.p.get('minor')))
            labels = dict(volume=self.p['device'], image=self.p['image'], minor=minor)
            try:
                metrics_mod.publish(path, labels, self._metrics_run(record, result, details or {}))
            except (OSError, ValueError) as err:
                self.warnings.append('Cannot write the metrics file %s: %s'
                                     % (path, getattr(err, 'strerror', None) or err))
                path = None
        if isinstance(details, dict):
            details['metrics_file'] = path

    def _metrics_run(self, record, result, failed):
        """What :func:`metrics.cycle_values` publishes of this cycle: ``result``, or the details of its failure."""
        run = dict(success=result is not None, finished=time.time(),
                   duration=time.monotonic() - self.run_began if self.run_began is not None else None,
                   mode=self.mode, reason=str(self.reason) if self.reason else None,
                   after_reboot=self.after_reboot is not None,
                   last_success=metrics_mod.epoch_of(record.get('last_success')))
        if self.cow_usage:
            run['cow_used'], run['cow_size'] = self.cow_usage
        if result is not None:
            run.update(dict((k, result.get(k)) for k in ('blocks', 'read_bytes', 'bytes', 'tracker', 'next_run',
                                                         'image_state')),
                       verification_ok=metrics_mod.verification_ok(result.get('verification'), result.get('verified')))
        else:
            run.update(step=failed.get('step'), next_run=failed.get('next_run'), image_state=failed.get('image_state'),
                       verification_ok=metrics_mod.verification_ok(self.verification, failed_step=failed.get('step')))
        return run
