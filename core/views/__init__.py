"""Views: Plotly figures and the CSV/HTML exports (no streamlit)."""
