"""What every case stands on: the bench context, servers, inputs, load sources, CPU and
memory accounting, summaries. Imports nothing from the cases, the report or the profilers."""
