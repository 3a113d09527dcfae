"""The figures (plots, from the one list in figure_list) and the PDF report's text and layout (pdf)."""
