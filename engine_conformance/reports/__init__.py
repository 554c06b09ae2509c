"""What a run writes: results.json, junit.xml, report.html, summary.md,
findings.md, the comparison across engines and the API-version axis.

Imports only the layers below.
"""
