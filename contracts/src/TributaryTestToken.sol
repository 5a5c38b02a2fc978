// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title TributaryTestToken
/// @notice A minimal ERC-20 for local chains and tests: the whole supply goes to `holder`.
/// A real deployment pays in any ERC-20.
contract TributaryTestToken is ERC20 {
    constructor(string memory name_, string memory symbol_, address holder, uint256 supply) ERC20(name_, symbol_) {
        _mint(holder, supply);
    }
}
