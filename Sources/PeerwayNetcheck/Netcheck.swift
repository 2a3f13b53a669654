// NAT behaviour discovery (RFC 5780): see NetcheckMachine.swift
