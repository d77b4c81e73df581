# Draws the suite's plots from bench/summarize.py's data files: latency vs throughput, and idle memory.
# usage: gnuplot -e "dir='bench/results/DATE'" bench/plot.gp
if (!exists("dir")) dir = "."
set terminal pngcairo size 960,600 font "sans,11"
set grid
set key top left

chorus_ramp = dir."/ramp-chorus.tsv"
node_ramp = dir."/ramp-reference.tsv"
have_node_ramp = system("test -s '".node_ramp."' && echo 1 || echo 0") + 0

set output dir."/latency_vs_throughput.png"
set title "Fan-out (1,000 clients, 10 rooms x 100): delivery latency vs deliveries per second"
set xlabel "deliveries per second (received during the window)"
set ylabel "delivery latency (ms, log scale)"
set logscale y
set format x "%.0s%c"
set arrow from graph 0, first 100 to graph 1, first 100 nohead dashtype 2 lc rgb "#888888"
if (have_node_ramp) {
  plot chorus_ramp using 2:4 with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "Chorus p99", \
       chorus_ramp using 2:3 with linespoints lw 1 pt 6 dt 2 lc rgb "#1f77b4" title "Chorus p50", \
       node_ramp using 2:4 with linespoints lw 2 pt 5 lc rgb "#d62728" title "Node ws p99", \
       node_ramp using 2:3 with linespoints lw 1 pt 4 dt 2 lc rgb "#d62728" title "Node ws p50"
} else {
  plot chorus_ramp using 2:4 with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "Chorus p99", \
       chorus_ramp using 2:3 with linespoints lw 1 pt 6 dt 2 lc rgb "#1f77b4" title "Chorus p50"
}
unset arrow
unset logscale y
unset format x

chorus_mem = dir."/memory-chorus.tsv"
node_mem = dir."/memory-reference.tsv"
have_node_mem = system("test -s '".node_mem."' && echo 1 || echo 0") + 0

set output dir."/memory.png"
set title "Idle connections: server RSS"
set xlabel "open WebSocket connections (authenticated, idle)"
set ylabel "server RSS (MiB)"
if (have_node_mem) {
  plot chorus_mem using 1:2 with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "Chorus", \
       node_mem using 1:2 with linespoints lw 2 pt 5 lc rgb "#d62728" title "Node ws"
} else {
  plot chorus_mem using 1:2 with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "Chorus"
}
