"""The iteration controller: collect -> train reward model -> train policy -> evaluate -> promote or roll back."""
