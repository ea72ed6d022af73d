"""Shower data in the CaloChallenge HDF5 layout: geometry, schema, streamed reading and atomic writing,
value validation, one-pass summaries and seeded splits (numpy + h5py; no torch).

Entry points: ``geometry.Geometry``, ``reader.ShowerFile`` / ``ShowerBatch``, ``writer.write_showers`` /
``ShowerWriter``, ``validate.validate_file``, ``summary.summarize`` / ``format_summary``, ``split.split_file``.
The file schema (official datasets plus the optional multi-detector extension) is documented in ``schema``.
"""
