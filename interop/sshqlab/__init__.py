"""sshqlab: the one library of sshq's interop matrix, loopback benchmarks and
lossy-link experiments.

- `paths`: where the built binaries are;
- `stats`: percentiles, latency summaries, ratios, slopes (unit-tested by
  interop/tests with pytest);
- `keys`, `ports`, `procs`, `gitinfo`: ssh-keygen, free ports, stopping
  processes, the commit a result was measured at;
- `results`: results directories, CSVs, matplotlib;
- `link`: the emulated link (sshq-linkem) and its namespaces;
- `servers`: the servers of an experiment (sshd, sshqd, the relay, the bulk
  source) and the loopback servers of the benchmarks;
- `probes`: what runs inside the client namespace (`python3 -m sshqlab.probes`);
- `experiment`: the scaffolding every lossy-link experiment shares
  (arguments, the link and servers, the log, the metadata).

interop/run puts interop/ on PYTHONPATH once; scripts import the package
normally and never touch sys.path.
"""
