"""The exchange's web faces (Streamlit): the trader portal and the analytics dashboard, and what
their pages compute, in tested modules of its own (`frontend.risk`)."""
