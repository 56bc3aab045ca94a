"""The real data set: `python -m pipeline.download` (`make real-data`).

`real_data` fetches the keras.io example's CSV and images archive, records and checks their
digests, extracts the images and checks them against the CSV; `fetch` downloads one file
(resumed, retried, verified); `untar` extracts an archive, refusing any member that could harm.
"""
