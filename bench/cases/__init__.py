"""The benchmark cases, one module each; ``bench.run`` lists them in running order."""
