"""The application: one typed function per command, each taking frozen configs and returning what it made.

A command's lifecycle lives here and nowhere else: which device it computes on and what it says of it, the
resume and overwrite rules of a run, the barriers between torchrun's ranks and who writes, where results go and
what they record of the model they measured, the cost said before it is spent. The command line
(:mod:`pvae.cli`) only builds parsers from the configs and calls these functions; sweeps run
:func:`~pvae.app.train.train` on ``dataclasses.replace(base, **cell)``; experiment scripts call them too.

======================  ==================================================================
command                 function
======================  ==================================================================
``pvae train``          :func:`pvae.app.train.train` (:class:`~pvae.app.train.TrainSettings`)
``pvae evaluate``       :func:`pvae.app.measures.evaluate`
``pvae plot``           :func:`pvae.app.measures.plot`
``pvae sample``         :func:`pvae.app.measures.sample`
``pvae compare-elbos``  :func:`pvae.app.measures.compare`
``pvae diagnose``       :func:`pvae.app.measures.diagnose`
``pvae disentangle``    :func:`pvae.app.measures.disentangle`
``pvae quality``        :func:`pvae.app.measures.quality`
``pvae encode``         :func:`pvae.app.measures.encode`
``pvae runs``           :func:`pvae.app.studies.runs`
``pvae report``         :func:`pvae.app.studies.report`
``pvae sweep``          :func:`pvae.app.studies.sweep`
``pvae upgrade``        :func:`pvae.app.studies.upgrade`
======================  ==================================================================

Failures a user can fix are raised as :class:`ValueError` (or :class:`pvae.data.DataError`,
:class:`pvae.base.runs.RunError`) with a message that names the problem and the fix; Ctrl-C as
:class:`~pvae.app.common.Interrupted`, saying what was kept and how to go on.
"""
