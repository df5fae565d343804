#!/bin/sh
# A stand-in for a simulation.  ensemble copies this script into each run directory with
# %%x%% and %%y%% replaced by the run's sample, runs it there, and reads the result file.
x=%%x%%
y=%%y%%
echo "simulating x=$x y=$y"
sleep 0.1
echo "{\"product\": $((x * y))}" > ensemble_result.json
