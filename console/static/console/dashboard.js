// Draws the console's charts from the JSON the page embeds (id "dashboard-charts", or
// "customer-usage-chart"): one Chart.js chart per canvas, one dataset per series.
(function () {
  "use strict";
  var palette = ["#1565c0", "#2e7d32", "#c62828", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037", "#ad1457"];

  function datasets(series, kind) {
    return series.map(function (s, i) {
      var colour = palette[i % palette.length];
      return {label: s.label, data: s.data.map(function (v) { return v === null ? null : Number(v); }),
              borderColor: colour, backgroundColor: kind === "bar" ? colour : colour + "33",
              fill: false, pointRadius: 0, borderWidth: 2, spanGaps: true};
    });
  }

  function draw(canvas, chart) {
    return new Chart(canvas, {
      type: chart.kind,
      data: {labels: chart.labels, datasets: datasets(chart.series, chart.kind)},
      options: {animation: false, responsive: true, maintainAspectRatio: false,
                plugins: {legend: {display: chart.series.length > 1 || chart.kind === "line"}},
                scales: {y: {beginAtZero: true, title: {display: !!chart.unit, text: chart.unit}},
                         x: {ticks: {maxTicksLimit: 14}}}}
    });
  }

  function start() {
    var data = document.getElementById("dashboard-charts");
    if (data) {
      JSON.parse(data.textContent).forEach(function (chart) {
        var canvas = document.getElementById("chart-" + chart.key);
        if (canvas) { draw(canvas, chart); }
      });
    }
    var usage = document.getElementById("customer-usage-chart");
    if (usage) {
      var chart = JSON.parse(usage.textContent);
      chart.kind = "bar"; chart.unit = "units";
      draw(document.getElementById("chart-usage"), chart);
    }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
