"""Dashboard pages, run by ``st.navigation`` in app.py (not named pages/: Streamlit would auto-list them)."""
