"""Reading input rows, shared by both Beam jobs (shards and scoring) and the download check.

- `csv_files`: the CSV input checked before any work (matched, header read, https fetched);
- `csv_records`: a CSV file's bytes → records, where a broken record costs that record only;
- `rows`: a record → a valid `Record`, or a `Rejection` with its reason code;
- `image_files`: a row's image files → their bytes, or the row's reason; the DoFn base that
  reads them on a thread pool, in order.

Both jobs refuse the same rows for the same reasons because both go through these.
"""
