"""Liquibook (github.com/enewhuis/liquibook, C++) replaying our streams, the yardstick of issue 15."""
