"""The trader portal, a Streamlit script: ``python main.py --frontend trader`` (`frontend.apps`)."""

from frontend.portal_page import main

main()
