"""Invoices, payments and the transactions that move money."""
